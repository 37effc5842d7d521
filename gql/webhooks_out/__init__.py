"""Outbound webhook endpoints in the API: createWebhookEndpoint, webhookEndpoints,
deleteWebhookEndpoint (platform admins only)."""
