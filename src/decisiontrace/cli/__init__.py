"""The ``decisiontrace`` command line: look into stored runs, run the demo.

Only this package imports click and rich, and nothing in the instrumentation imports
it, so an agent that only records decisions never loads them. The entry point is
:func:`decisiontrace.cli.app.main` (the ``decisiontrace`` script, ``python -m decisiontrace``).
"""
