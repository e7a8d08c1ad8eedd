pub use actorchain_token as token;
