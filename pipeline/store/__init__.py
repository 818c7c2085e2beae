"""Model files on disk: `artifacts` (safetensors and JSON, written atomically) and
`model_store` (crash-safe, versioned model sets with a CURRENT pointer, roll-back).
"""
