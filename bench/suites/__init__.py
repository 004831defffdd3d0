"""One module per suite (or per pair of suites that share their code); ``rlkit.bench.registry`` lists them."""
