"""Score runs: which run (`lookup`), how one is computed (`lifecycle`, `components`, `results`)
and how it is stored (`storage`); `inputs` is the snapshot of data a run reads."""
