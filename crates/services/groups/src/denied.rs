//! Why a group operation or request is not allowed: who may add, remove, promote, leave,
//! revoke, change keys, join with an invite, or read a log. The fold skips an operation
//! with one of these (the same way on every member), the serving side refuses a peer's
//! request with one, and the handle refuses a user's. The text of each is what goes on
//! the wire in a `refused` answer.

/// A refusal, by reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// A genesis after the first operation.
    #[error("a second genesis")]
    SecondGenesis,
    /// The author's device is no current, unrevoked device of a member.
    #[error("the author is no current device of a member")]
    NotCurrentDevice,
    /// Adding, removing, promoting and inviting need an admin.
    #[error("only an admin of the group may do this")]
    NotAdmin,
    #[error("already a member")]
    AlreadyMember,
    /// The person named, or the asker, is no member.
    #[error("not a member")]
    NotMember,
    /// A revocation of a device no member has.
    #[error("the revoked device is no member's")]
    NotMembersDevice,
    /// The last admin may not leave while other members stay.
    #[error("the last admin cannot leave while others stay")]
    LastAdmin,
    /// An `add_device` whose certificate is not a valid, unrevoked one of the author's
    /// person.
    #[error("not a valid device of the author's person")]
    NotAuthorsDevice,
    #[error("a forged revocation")]
    ForgedRevocation,
    /// Certificates of another person than the one added, or forged ones.
    #[error("a device certificate of another person, or a forged one")]
    BadCerts,
    /// A member added with no valid device.
    #[error("no device")]
    NoDevice,
    /// Only creating, adding, removing, revoking and rotating may start a key epoch.
    #[error("this operation cannot start an epoch")]
    CannotStartEpoch,
    #[error("an epoch ID used before")]
    EpochReused,
    /// In the log: an `add` whose invite is used up or for another group.
    #[error("the invite is used up or for another group")]
    InviteSpent,
    #[error("this invite is for another group")]
    InviteForAnotherGroup,
    #[error("this invite is not signed by a current admin of the group")]
    InviterNotAdmin,
    #[error("this invite has expired")]
    InviteExpired,
    #[error("this invite was used {used} time(s) already and allows {uses}")]
    InviteUsed { used: u32, uses: u32 },
    /// The joining devices' certificates are not of one person, do not verify, do not
    /// name the asking device, or are too many.
    #[error("the joining devices' certificates do not hold")]
    JoiningCerts,
    /// The group shares its history but this device lacks the current key to grant.
    #[error("this device lacks the group key")]
    LacksKey,
    /// A request only another device of this person may make.
    #[error("not a device of this person")]
    NotThisPerson,
    /// A sync naming more hashes than a log may hold.
    #[error("too many hashes")]
    TooManyHashes,
}
