"""onchip-ff: forward-only learning rules on modelled in-memory-computing hardware.

The Python API (onchip_ff/api.py; README "Python API"):
    fit(config, data) -> Run(model, metrics, history)     train a registered method on your arrays
    dataset(arrays)                                        your x_train, y_train, x_test, y_test as a Dataset
    Model: model(x) scores, predict(x), train_step(x, y), set_time(t_s), save(path); load(path)
    program(model, preset)                                 a trained model on fresh arrays of a preset
    convert(module, preset), set_time(module, t_s)         any torch module's Linear/Conv2d on simulated arrays
    load_config(path, overrides)                           a validated Config
The names load lazily: importing onchip_ff (or a submodule) imports neither torch nor numba; it
sets OMP_WAIT_POLICY=PASSIVE unless already set (common/threads.py), so that idle threads of the
torch and numba loaded afterwards do not spin against other processes.
"""

from common.threads import passive_threads

passive_threads()

__version__ = "0.1.0"

__all__ = ["Model", "Run", "convert", "dataset", "fit", "load", "load_config", "program", "set_time", "__version__"]
_API = ("Model", "Run", "convert", "dataset", "fit", "load", "program", "set_time")


def __getattr__(name: str):
    if name in _API:
        from onchip_ff import api
        return getattr(api, name)
    if name == "load_config":
        from onchip_ff.config import load
        return load
    raise AttributeError(f"module 'onchip_ff' has no attribute {name!r}")
