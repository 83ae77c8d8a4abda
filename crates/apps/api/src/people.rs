//! People, their devices and private groups: the types of `/person`, `/devices` and
//! `/groups`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One device of a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    /// The device's peer ID.
    pub device: String,
    /// When its certificate was issued (seconds since the Unix epoch).
    pub issued: u64,
    /// Whether it is the device answering.
    pub this: bool,
    pub revoked: bool,
}

/// `GET /person`: who this device acts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Person {
    /// The person ID (written like a peer ID), the same on all of the person's devices.
    pub person: String,
    pub devices: Vec<Device>,
    /// Whether this device holds the person key (only it can link and remove devices).
    pub holds_person_key: bool,
}

/// `POST /devices/link`: a one-time code another device joins with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LinkCode {
    pub code: String,
    /// Seconds the code stays valid (it is also single use).
    pub expires_in: u64,
}

/// `POST /devices/join`: become a device of the person whose device gave `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinDevice {
    pub code: String,
}

/// `DELETE /devices/{id}`: the revocation that was signed and sent to every group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceRemoved {
    pub person: String,
    pub device: String,
}

/// A group this device's person is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Group {
    /// The group ID (`grp-…`, derived from the group's first operation).
    pub group: String,
    pub name: String,
    /// People in it.
    pub members: usize,
    /// Whether this device's person is an admin.
    pub admin: bool,
}

/// `POST /groups`: create a group (the caller's person is its first admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: String,
    /// Let people who join read what was sealed before they joined (default: no).
    #[serde(default)]
    pub history: bool,
}

/// `POST /groups/{group}/invites`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// Seconds the invite is valid (default 24 h, at most 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// How many people may join with it (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
    /// Whoever joins with it becomes an admin.
    #[serde(default)]
    pub admin: bool,
}

/// A signed invite token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Invite {
    pub token: String,
    pub group: String,
    pub name: String,
    /// Seconds since the Unix epoch after which it is refused.
    pub expires: u64,
    pub uses: u32,
    pub admin: bool,
}

/// `POST /groups/join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinGroup {
    pub token: String,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub person: String,
    /// The member's devices that the group trusts.
    pub devices: Vec<String>,
    pub admin: bool,
    /// Whether one of its devices is connected to this node (or is this node).
    pub online: bool,
}
