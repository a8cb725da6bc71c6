"""R2, reflect and revise: config, writer-judge loop, state rebuilt from events, judge, reward, stored jobs."""
