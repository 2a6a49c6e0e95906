"""Code the tests share beyond one module: the bad-input fuzzer's strategies, builders and outcome rules."""
