"""The command line: the Typer app (app.py) maps each command to one library function; train.py wraps
`rnnclf train`/`pretrain` (run folder, Ctrl-C, the resume hint); render.py and progress.py are the only
places that print with rich.

May import everything in rnnclf. Nothing in rnnclf imports it. It decides no device, precision or
thread settings (rnnclf.runtime does, called by the library).
"""
