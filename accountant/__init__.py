"""The training-memory accountant: an analytic model of what one training step holds (memory.py:
MemorySpec, predict; the learners' schedules replayed on a symbolic autograd tape: tape.py,
layers.py, schedules.py, sff.py) and its measurement on real runs (measure.py).  Sits above
hw_models and onchip_ff (it replays the learners and measures them); only experiments import it."""
