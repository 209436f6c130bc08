//! Talking to Supabase: settings, JWT verification and claims, PostgREST and Auth clients.
