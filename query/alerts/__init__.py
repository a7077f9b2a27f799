"""Alerts: rules on a search, a metric query or the pipeline itself, evaluated on a schedule by one process
of a deployment, with a state per group (ok -> pending -> firing -> resolved), history, silences and webhook
notifications (docs/alerts.md).

* `rules` — what a rule is (pydantic), as the API takes it and the store keeps it;
* `evaluate` — the value of each group of a rule now, through the team-restricted reader;
* `engine` — the evaluator: the lease that elects one process, the schedule, the state machine, the outbox;
* `notify` — webhook deliveries: payloads (JSON, Slack), HMAC signatures, retries with backoff, attempts.
"""
