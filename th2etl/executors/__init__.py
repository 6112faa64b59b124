"""Where a whole run executes (the run-level executor), one module per kind.

:mod:`th2etl.executors.dask` sends each run to a Dask cluster.
"""
