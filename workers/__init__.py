"""arq workers: out-of-band jobs and cron. `memoryd worker` runs them."""
