"""Hardware models: fixed-point formats, crossbar tiles, periphery, noise models, presets."""
