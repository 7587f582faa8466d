//! Read-your-writes: a read with `after_event` waits until the updater counted that event.

use std::time::Duration;

use uuid::Uuid;

use crate::store::{Store, StoreError};

/// How long a read with `after_event` may wait for the updater.
#[derive(Debug, Clone, Copy)]
pub struct ReadYourWrites {
    pub timeout: Duration,
}

/// How often a waiting read looks for its event: short against the pipeline's lag (tens
/// of milliseconds), long enough to cost Postgres little.
const POLL: Duration = Duration::from_millis(10);

impl ReadYourWrites {
    /// Waits until the updater counted `event_id` or the timeout passes; whether it was.
    pub async fn until_applied(&self, store: &Store, event_id: Uuid) -> Result<bool, StoreError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if store.event_applied(event_id).await? {
                return Ok(true);
            }
            if tokio::time::Instant::now() + POLL > deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
