"""What a run leaves on disk: ``runs`` (run directories, locks), ``checkpoint`` (atomic, safe load),
``export`` (acting weights in safetensors), ``logger`` (progress, TensorBoard, metrics.jsonl, plots),
``rendering`` (videos, headless MuJoCo)."""
