//! Condition types and reasons, spelled as cert-manager spells them, so `kubectl get`, `cmctl` and alerting
//! rules written for cert-manager read certgate's status unchanged.

/// Condition types.
pub mod types {
    /// Issuer, ClusterIssuer, Certificate, CertificateRequest: usable / issued and valid.
    pub const READY: &str = "Ready";
    /// Certificate: an issuance is in progress (removed when it completes).
    pub const ISSUING: &str = "Issuing";
    /// CertificateRequest: approved for signing.
    pub const APPROVED: &str = "Approved";
    /// CertificateRequest: denied; it will never be signed.
    pub const DENIED: &str = "Denied";
    /// CertificateRequest: the signer refused it because of an invalid input.
    pub const INVALID_REQUEST: &str = "InvalidRequest";
}

/// Reasons on a Certificate's `Ready` and `Issuing` conditions (cert-manager's readiness/trigger policies).
pub mod certificate {
    /// Ready=True: the Secret holds a valid, matching, unexpired certificate.
    pub const READY: &str = "Ready";
    /// The Secret named in `spec.secretName` does not exist.
    pub const DOES_NOT_EXIST: &str = "DoesNotExist";
    /// The Secret lacks `tls.crt` or `tls.key`.
    pub const MISSING_DATA: &str = "MissingData";
    /// The certificate's public key does not match the private key.
    pub const INVALID_KEY_PAIR: &str = "InvalidKeyPair";
    /// The stored certificate cannot be parsed.
    pub const INVALID_CERTIFICATE: &str = "InvalidCertificate";
    /// The stored private key does not match `spec.privateKey`.
    pub const SECRET_MISMATCH: &str = "SecretMismatch";
    /// The stored certificate was issued by another issuer.
    pub const INCORRECT_ISSUER: &str = "IncorrectIssuer";
    /// The spec changed since the last request (names, usages…).
    pub const REQUEST_CHANGED: &str = "RequestChanged";
    /// Issuing=True: the renewal time has been reached.
    pub const RENEWING: &str = "Renewing";
    /// The stored certificate has expired.
    pub const EXPIRED: &str = "Expired";
    /// Issuing=False after a failed attempt (backoff until the next one).
    pub const FAILED: &str = "Failed";
    /// Issuing=True because someone asked for it (`cmctl renew` sets this).
    pub const MANUALLY_TRIGGERED: &str = "ManuallyTriggered";
    /// Ready=False while a first issuance is in progress.
    pub const ISSUING: &str = "Issuing";
}

/// Reasons on a CertificateRequest's conditions.
pub mod certificate_request {
    /// Ready=False: still in progress.
    pub const PENDING: &str = "Pending";
    /// Ready=False: failed for good (`status.failureTime` is set).
    pub const FAILED: &str = "Failed";
    /// Ready=True: `status.certificate` is set.
    pub const ISSUED: &str = "Issued";
    /// Ready=False after a Denied condition.
    pub const DENIED: &str = "Denied";
    /// Approved=True set by cert-manager's own approver; certgate approves the same way.
    pub const APPROVER: &str = "cert-manager.io";
}

/// Reasons on an Issuer's or ClusterIssuer's `Ready` condition.
pub mod issuer {
    /// ACME: the account was registered with the ACME server.
    pub const ACME_ACCOUNT_REGISTERED: &str = "ACMEAccountRegistered";
    /// ACME: an existing account was verified with the ACME server.
    pub const ACME_ACCOUNT_VERIFIED: &str = "ACMEAccountVerified";
    /// ACME: registering the account failed.
    pub const ERR_REGISTER_ACME_ACCOUNT: &str = "ErrRegisterACMEAccount";
    /// ACME: verifying the account failed.
    pub const ERR_VERIFY_ACME_ACCOUNT: &str = "ErrVerifyACMEAccount";
    /// ACME: updating the account (e.g. its email) failed.
    pub const ERR_UPDATE_ACME_ACCOUNT: &str = "ErrUpdateACMEAccount";
    /// CA: the signing key pair in `spec.ca.secretName` is valid.
    pub const KEY_PAIR_VERIFIED: &str = "KeyPairVerified";
    /// CA: the signing key pair could not be read.
    pub const ERR_GET_KEY_PAIR: &str = "ErrGetKeyPair";
    /// CA: the signing key pair is not valid.
    pub const ERR_INVALID_KEY_PAIR: &str = "ErrInvalidKeyPair";
    /// SelfSigned: always ready.
    pub const IS_READY: &str = "IsReady";
    /// The issuer type could not be set up (certgate also uses it for types it does not implement:
    /// Vault, Venafi).
    pub const ERR_INIT_ISSUER: &str = "ErrInitIssuer";
}
