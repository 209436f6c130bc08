//! Integrations: a user's settings for Slack, HubSpot, email, … kept in `integration_configs`
//! (validated, secrets encrypted and status kept by the extension), installed by OAuth where
//! the provider offers it, and used by the routes that talk to the provider.

pub mod providers;
