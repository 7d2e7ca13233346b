"""Scale-out: node identity, cluster status, and the edge box as a leaf node (``docs/scale-out.md``)."""
