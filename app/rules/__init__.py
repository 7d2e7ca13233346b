"""Alert rules: definitions, the evaluator, rule events, and the rules page."""
