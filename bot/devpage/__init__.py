"""The `guardian dev` page: a Slack-like channel in the browser, backed by the Slack stand-in."""
