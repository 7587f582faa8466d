//! The OpenAPI tags that group tally's operations in the spec and the docs UI.

use poem_openapi::Tags;

#[derive(Debug, Tags)]
pub enum ApiTags {
    /// Likeable items and their like and comment counts.
    Posts,
    /// Liking and unliking posts, and who liked them.
    Likes,
    /// Commenting on posts.
    Comments,
    /// Counts pushed as they change (server-sent events).
    Live,
    /// Liveness and readiness probes, and metrics, for operators.
    Health,
}
