"""Running a grid: cells, executors, the records a run folder holds, and the environment it records."""
