"""Weight copy through the layer map: conversions and inits applied, verified bit for bit; checkpoint conversion.

``weights`` copies model to model, ``inits`` resolves and runs the init
functions a map names (PaDiff's special inits, backwards where needed),
``checkpoints`` converts a saved state dict without the base model's weights.
"""
