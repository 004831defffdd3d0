"""Experience: where batches come from. ``sources`` (the protocol, the read-only dataset source),
``replay`` (n-step transitions, prioritized replay), ``her`` (hindsight relabelling), ``sequences``
(fixed-length windows with masks), ``datasets`` (Minari storage). Storage never imports training."""
