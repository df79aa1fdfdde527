"""Research and maintenance tools, the top floor: the sweep, the benchmarks, the demo, the bundles' eval_metrics and
the synthetic/atlas data makers. Nothing below (the product, the bundles, deployment) imports them."""
