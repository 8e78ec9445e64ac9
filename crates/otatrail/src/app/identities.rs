//! Accounts, users and access keys: loading them from configuration, creating the default
//! account on first start, and resolving an access key to its principal and secret.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::config::AccountConfig;
use crate::crypto::MasterKey;
use crate::domain::identity::{
    AccessKeyRecord, Account, KeyStatus, Secret, User, new_access_key_id, new_account_id, new_secret, new_user_id,
};
use crate::domain::time::SharedClock;
use crate::domain::{Principal, ServiceError};
use crate::store::{self, Store, StoreError};

/// What SigV4 verification needs to know about an access key.
#[derive(Clone, Debug)]
pub struct KeyCredential {
    pub principal: Principal,
    pub secret: Secret,
    pub status: KeyStatus,
    /// Set for temporary credentials: the request must carry the matching session token.
    pub session: Option<SessionAuth>,
}

#[derive(Clone, Debug)]
pub struct SessionAuth {
    /// Lowercase hex SHA-256 of the session token.
    pub token_sha256: String,
    pub expires_at: crate::domain::time::Millis,
}

/// The account created on first start, with its root key.
#[derive(Clone, Debug)]
pub struct RootCredentials {
    pub account_id: String,
    pub access_key_id: String,
    pub secret: Secret,
}

pub struct Identities {
    store: Arc<dyn Store>,
    master: Arc<MasterKey>,
    clock: SharedClock,
    /// Resolved keys. Entries are dropped when a key changes (IAM calls).
    cache: RwLock<HashMap<String, KeyCredential>>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(String),
    #[error("the secret of access key {0} cannot be opened with this data directory's master key")]
    Unseal(String),
}

impl From<IdentityError> for ServiceError {
    fn from(e: IdentityError) -> Self {
        tracing::error!(error = %e, "identity lookup failed");
        ServiceError::internal()
    }
}

impl Identities {
    pub fn new(store: Arc<dyn Store>, master: Arc<MasterKey>, clock: SharedClock) -> Self {
        Self { store, master, clock, cache: RwLock::new(HashMap::new()) }
    }

    /// Resolves an access key ID; `None` when no such key exists.
    pub async fn lookup(&self, access_key_id: &str) -> Result<Option<KeyCredential>, IdentityError> {
        if let Some(c) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(access_key_id) {
            return Ok(Some(c.clone()));
        }
        let id = access_key_id.to_string();
        let found = store::read::<_, StoreError, _>(&*self.store, move |tx| {
            Box::pin(async move {
                let Some(key) = tx.get_access_key(&id).await? else {
                    return Ok(tx.get_session(&id).await?.map(Err));
                };
                let user = match &key.user_name {
                    Some(name) => tx.get_user(&key.account_id, name).await?,
                    None => None,
                };
                Ok(Some(Ok((key, user))))
            })
        })
        .await?;
        let (key, user) = match found {
            None => return Ok(None),
            Some(Ok(long_term)) => long_term,
            Some(Err(session)) => {
                let secret = self.open(&session.access_key_id, &session.sealed_secret)?;
                let cred = KeyCredential {
                    principal: session.principal,
                    secret,
                    status: KeyStatus::Active,
                    session: Some(SessionAuth { token_sha256: session.token_sha256, expires_at: session.expires_at }),
                };
                self.cache.write().unwrap_or_else(|e| e.into_inner()).insert(access_key_id.to_string(), cred.clone());
                return Ok(Some(cred));
            }
        };
        let secret = self.open(&key.access_key_id, &key.sealed_secret)?;
        let principal = match (&key.user_name, user) {
            (None, _) => Principal::root(&key.account_id, &key.access_key_id),
            (Some(_), Some(u)) => Principal::iam_user(&key.account_id, &u.user_id, &u.name, &u.path, &key.access_key_id),
            // A key whose user is gone cannot sign anything.
            (Some(_), None) => return Ok(None),
        };
        let cred = KeyCredential { principal, secret, status: key.status, session: None };
        self.cache.write().unwrap_or_else(|e| e.into_inner()).insert(access_key_id.to_string(), cred.clone());
        Ok(Some(cred))
    }

    /// Forgets a cached key, after it changed.
    pub fn invalidate(&self, access_key_id: &str) {
        self.cache.write().unwrap_or_else(|e| e.into_inner()).remove(access_key_id);
    }

    /// Seals a secret for storage, bound to its access key ID.
    pub fn seal(&self, access_key_id: &str, secret: &str) -> Vec<u8> {
        self.master.seal(access_key_id, secret.as_bytes())
    }

    fn open(&self, access_key_id: &str, sealed: &[u8]) -> Result<Secret, IdentityError> {
        self.master
            .open(access_key_id, sealed)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Secret::new)
            .ok_or_else(|| IdentityError::Unseal(access_key_id.to_string()))
    }

    fn seal_key(&self, account_id: &str, user: Option<&str>, id: &str, secret: &str) -> AccessKeyRecord {
        AccessKeyRecord {
            access_key_id: id.to_string(),
            account_id: account_id.to_string(),
            user_name: user.map(str::to_string),
            status: KeyStatus::Active,
            sealed_secret: self.seal(id, secret),
            created_at: self.clock.now(),
        }
    }

    /// Makes the accounts, users and keys of the configuration exist. Entities already stored
    /// are kept; a configured key that exists with another owner is an error.
    pub async fn apply_config(&self, accounts: &[AccountConfig]) -> Result<(), IdentityError> {
        for a in accounts {
            let now = self.clock.now();
            let mut keys = Vec::new();
            if let (Some(id), Some(secret)) = (&a.root_access_key_id, &a.root_secret_access_key) {
                keys.push(self.seal_key(&a.id, None, id, secret));
            }
            let mut users = Vec::new();
            for u in &a.users {
                users.push(User {
                    account_id: a.id.clone(),
                    name: u.name.clone(),
                    user_id: new_user_id(&mut rand::rng()),
                    path: normalize_path(&u.path),
                    tags: Vec::new(),
                    created_at: now,
                });
                for k in &u.access_keys {
                    keys.push(self.seal_key(&a.id, Some(&u.name), &k.id, &k.secret));
                }
            }
            let account = Account { id: a.id.clone(), created_at: now };
            store::write::<_, IdentityError, _>(&*self.store, move |tx| {
                Box::pin(async move {
                    if tx.get_account(&account.id).await?.is_none() {
                        tx.insert_account(&account).await?;
                    }
                    for u in &users {
                        if tx.get_user(&u.account_id, &u.name).await?.is_none() {
                            tx.insert_user(u).await?;
                        }
                    }
                    for k in &keys {
                        match tx.get_access_key(&k.access_key_id).await? {
                            None => tx.insert_access_key(k).await?,
                            Some(existing)
                                if existing.account_id != k.account_id || existing.user_name != k.user_name =>
                            {
                                return Err(IdentityError::Config(format!(
                                    "access key {} already belongs to another user or account",
                                    k.access_key_id
                                )));
                            }
                            Some(_) => {}
                        }
                    }
                    Ok(())
                })
            })
            .await?;
        }
        Ok(())
    }

    /// The first account and its first active root key, if any account exists.
    pub async fn default_root(&self) -> Result<Option<RootCredentials>, IdentityError> {
        let found = store::read::<_, StoreError, _>(&*self.store, move |tx| {
            Box::pin(async move {
                for a in tx.list_accounts().await? {
                    let keys = tx.list_access_keys(&a.id, None).await?;
                    if let Some(k) = keys.into_iter().find(|k| k.status == KeyStatus::Active) {
                        return Ok(Some(k));
                    }
                }
                Ok(None)
            })
        })
        .await?;
        let Some(k) = found else { return Ok(None) };
        let secret = self.open(&k.access_key_id, &k.sealed_secret)?;
        Ok(Some(RootCredentials { account_id: k.account_id, access_key_id: k.access_key_id, secret }))
    }

    pub async fn has_accounts(&self) -> Result<bool, IdentityError> {
        Ok(store::read::<_, StoreError, _>(&*self.store, |tx| Box::pin(async move { Ok(!tx.list_accounts().await?.is_empty()) }))
            .await?)
    }

    /// Creates a new account with a root access key.
    pub async fn create_account_with_root_key(&self) -> Result<RootCredentials, IdentityError> {
        let (account_id, access_key_id, secret) = {
            let mut rng = rand::rng();
            (new_account_id(&mut rng), new_access_key_id(&mut rng), new_secret(&mut rng))
        };
        let account = Account { id: account_id.clone(), created_at: self.clock.now() };
        let key = self.seal_key(&account_id, None, &access_key_id, secret.expose());
        store::write::<_, IdentityError, _>(&*self.store, move |tx| {
            Box::pin(async move {
                tx.insert_account(&account).await?;
                tx.insert_access_key(&key).await?;
                Ok(())
            })
        })
        .await?;
        Ok(RootCredentials { account_id, access_key_id, secret })
    }
}

/// IAM paths start and end with `/`.
fn normalize_path(p: &str) -> String {
    let mut s = p.to_string();
    if !s.starts_with('/') {
        s.insert(0, '/');
    }
    if !s.ends_with('/') {
        s.push('/');
    }
    s
}
