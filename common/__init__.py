"""The bottom layer every package may import: errors meant for people and config-value coercion.
Imports nothing from hw_models, onchip_ff, accountant or experiments."""
