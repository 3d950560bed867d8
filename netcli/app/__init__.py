"""What netcli does with models, above the engine: nothing in layers/, models/ or the trainer imports from here.

    evaluate.py   load a run (its config and best checkpoint) and evaluate it: `netcli eval`
    sample.py     images from a generative run: `netcli sample`
    quality.py    sample quality judged by a classifier run: `netcli eval RUN --classifier CLF`
    bench.py      per-layer time and memory of a config's model: `netcli bench`
    summary.py    the layer table of a built model: `netcli summary`
    next_steps.py the commands that apply to a trained run, printed at the end of `netcli train`

They ask a model for a capability (``models.base.require``), never for its type.
"""
