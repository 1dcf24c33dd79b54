//! End-to-end tests of the real binary over HTTPS, for what the Azure SDK cannot reach: forged
//! tokens, tampered backups, the audit chain, crash safety, plaintext on disk, error shapes,
//! several servers on one PostgreSQL database.

mod common;

mod agent;
mod cik_channel;
mod device_alerts;
mod device_inputs;
mod device_recovery;
mod device_sync;
mod devices;
mod edge_sync;

mod auth;
mod change_feed;
mod cli_audit;
mod cli_secrets;
mod cli_support;
mod cli_transfer;
mod cli_vaults;
mod config_file;
mod durability;
mod errors;
mod full_disk;
mod hostile_clients;
mod identities;
mod management;
mod metrics;
mod mgmt_insights;
mod operations;
mod postgres;
mod rbac_matrix;
mod rust_sdk;
mod throttling;
mod tls_reload;
