"""Jobs: the job spec, the market state machines, matrix blobs and the executors (spec 04)."""
