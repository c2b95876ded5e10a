//! Atelier's training photos: find them in a folder tree ([`find_photos`]) and stream them as
//! reproducible, resumable batches of random square crops ([`PhotoStream`]).
//!
//! Determinism: the order of each epoch and every crop follow from the seed, the epoch and the
//! file alone, so two runs with the same seed and files see the same batches, and a run resumed
//! from a [`StreamState`] continues exactly where it stopped. The number of decoding threads does
//! not change the batches.
//!
//! Pixels follow `models::pixels`: batches are `[B, 3, S, S]` f32 RGB in [0, 255] on the CPU.

pub mod discover;
pub mod error;
mod rng;
pub mod stream;

pub use discover::{find_photos, FoundPhotos, PHOTO_EXTENSIONS};
pub use error::{Error, Result};
pub use stream::{Batch, PhotoStream, SkippedPhoto, StreamConfig, StreamState};
