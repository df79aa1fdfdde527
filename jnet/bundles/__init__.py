"""The bundles floor: the dataset x resolution matrix (:mod:`.matrix`), rendering ``configs/`` into ``bundles/``
(:mod:`.render`), the generated-files check (:mod:`.check`), the ``large_files.yml`` format (:mod:`.large_files`)
and reading a bundle's configs from Python (:mod:`.parse`). Stands on the product floor; deployment and the tools
stand on it."""
