"""Scale-out engines for ``predict`` (optional ``[cluster]`` extra): :mod:`inference.cluster.ray_engine`."""
