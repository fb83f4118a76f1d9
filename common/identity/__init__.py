"""Who the caller is and what they may do: token and API-key verification (auth, apikeys), roles
and route checks (authz)."""
