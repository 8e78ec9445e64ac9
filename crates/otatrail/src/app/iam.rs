//! IAM operations: users, access keys, roles and their tags. Every principal may manage the
//! identities of its own account (there are no permission policies yet).

use crate::domain::iam::{
    self, DELETE_CONFLICT, ENTITY_ALREADY_EXISTS, LIMIT_EXCEEDED, MAX_ACCESS_KEYS_PER_USER, check_name, no_such_role,
    no_such_user,
};
use crate::domain::identity::{
    AccessKeyRecord, IamTag, KeyStatus, Role, Secret, User, new_access_key_id, new_role_id, new_secret, new_user_id,
};
use crate::domain::{Principal, ServiceError, policy};
use crate::store;

use std::sync::Arc;

use super::App;
use super::audit::Call;
use crate::app::sts::iso8601;
use serde_json::{Value, json};

/// `user` as CloudTrail shows it in responseElements.
pub fn user_json(u: &User) -> Value {
    json!({"path": u.path, "userName": u.name, "userId": u.user_id, "arn": u.arn(), "createDate": iso8601(u.created_at)})
}

/// `role` as CloudTrail shows it in responseElements.
pub fn role_json(r: &Role) -> Value {
    json!({"path": r.path, "roleName": r.name, "roleId": r.role_id, "arn": r.arn(), "createDate": iso8601(r.created_at),
           "assumeRolePolicyDocument": r.assume_role_policy, "maxSessionDuration": r.max_session_duration})
}

/// `accessKey` as CloudTrail shows it: never the secret.
pub fn access_key_json(k: &AccessKeyRecord) -> Value {
    json!({"userName": k.user_name, "accessKeyId": k.access_key_id, "status": k.status.as_str(), "createDate": iso8601(k.created_at)})
}

const USER: &str = "AWS::IAM::User";
const ROLE: &str = "AWS::IAM::Role";
const ACCESS_KEY: &str = "AWS::IAM::AccessKey";

fn user_arn(acct: &str, name: &str) -> String {
    format!("arn:aws:iam::{acct}:user/{name}")
}

fn role_arn(acct: &str, name: &str) -> String {
    format!("arn:aws:iam::{acct}:role/{name}")
}

/// A page of an IAM listing: `Marker` is the last name returned.
pub struct Page<T> {
    pub items: Vec<T>,
    pub marker: Option<String>,
}

pub const DEFAULT_MAX_ITEMS: i64 = 100;

fn page_size(max_items: Option<i64>) -> Result<i64, ServiceError> {
    let n = max_items.unwrap_or(DEFAULT_MAX_ITEMS);
    if !(1..=1000).contains(&n) {
        return Err(iam::validation("maxItems", &n.to_string(), "Member must have value between 1 and 1000, inclusive"));
    }
    Ok(n)
}

fn decode_marker(marker: Option<&str>) -> Result<Option<String>, ServiceError> {
    use base64::Engine;
    marker
        .map(|m| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(m)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| iam::validation("marker", m, "Member must be a marker returned by a previous call"))
        })
        .transpose()
}

fn encode_marker(name: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name)
}

fn paged<T>(mut items: Vec<T>, limit: i64, name: impl Fn(&T) -> &str) -> Page<T> {
    let marker = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|i| encode_marker(name(i)))
    } else {
        None
    };
    Page { items, marker }
}

/// Which user an access-key call is about: the named one, else the caller itself (an IAM
/// user, or `None` for the root user).
fn key_owner(caller: &Principal, user_name: Option<&str>) -> Option<String> {
    match user_name {
        Some(n) => Some(n.to_string()),
        None => caller.user_name.clone().filter(|_| caller.identity_type == crate::domain::IdentityType::IAMUser),
    }
}

impl App {
    pub async fn iam_create_user(&self, call: &Arc<Call>, name: &str, path: Option<&str>, tags: Vec<IamTag>) -> Result<User, ServiceError> {
        let caller = &call.principal;
        check_name("userName", name, 1, 64)?;
        let path = path.unwrap_or("/");
        iam::check_path("path", path)?;
        iam::check_tags(&tags)?;
        let call = call.clone();
        let user = User {
            account_id: caller.account_id.clone(),
            name: name.to_string(),
            user_id: new_user_id(&mut rand::rng()),
            path: path.to_string(),
            tags,
            created_at: self.clock.now(),
        };
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                if tx.get_user(&user.account_id, &user.name).await?.is_some() {
                    return Err(ServiceError::new(ENTITY_ALREADY_EXISTS, format!("User with name {} already exists.", user.name)));
                }
                tx.insert_user(&user).await?;
                call.record_success(tx, Some(json!({"user": user_json(&user)})), vec![call.resource(user.arn(), USER)]).await?;
                Ok(user)
            })
        })
        .await
    }

    pub async fn iam_get_user(&self, call: &Arc<Call>, name: Option<&str>) -> Result<User, ServiceError> {
        let caller = &call.principal;
        let Some(name) = key_owner(caller, name) else {
            return Ok(User::root(&caller.account_id));
        };
        check_name("userName", &name, 1, 128)?;
        let acct = caller.account_id.clone();
        store::read(&*self.store, move |tx| {
            Box::pin(async move { tx.get_user(&acct, &name).await?.ok_or_else(|| no_such_user(&name)) })
        })
        .await
    }

    pub async fn iam_list_users(&self, call: &Arc<Call>, path_prefix: Option<String>, marker: Option<&str>, max_items: Option<i64>) -> Result<Page<User>, ServiceError> {
        let caller = &call.principal;
        let limit = page_size(max_items)?;
        let after = decode_marker(marker)?;
        let acct = caller.account_id.clone();
        let users = store::read(&*self.store, move |tx| {
            Box::pin(async move {
                // Path filtering happens after the page read, so read past filtered users.
                let mut out = Vec::new();
                let mut cursor = after;
                loop {
                    let batch = tx.list_users(&acct, cursor.as_deref(), 500).await?;
                    let done = batch.len() < 500;
                    cursor = batch.last().map(|u| u.name.clone());
                    out.extend(batch.into_iter().filter(|u| path_prefix.as_deref().is_none_or(|p| u.path.starts_with(p))));
                    if done || out.len() as i64 > limit {
                        break;
                    }
                }
                Ok::<_, ServiceError>(out)
            })
        })
        .await?;
        Ok(paged(users, limit, |u| &u.name))
    }

    pub async fn iam_delete_user(&self, call: &Arc<Call>, name: &str) -> Result<(), ServiceError> {
        let caller = &call.principal;
        check_name("userName", name, 1, 128)?;
        let (acct, name, call) = (caller.account_id.clone(), name.to_string(), call.clone());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let user = tx.get_user(&acct, &name).await?.ok_or_else(|| no_such_user(&name))?;
                if !tx.list_access_keys(&acct, Some(&user.name)).await?.is_empty() {
                    return Err(ServiceError::new(DELETE_CONFLICT, "Cannot delete entity, must delete access keys first."));
                }
                tx.delete_user(&acct, &user.name).await?;
                call.record_success(tx, None, vec![call.resource(user.arn(), USER)]).await?;
                Ok(())
            })
        })
        .await
    }

    pub async fn iam_create_access_key(&self, call: &Arc<Call>, user_name: Option<&str>) -> Result<(AccessKeyRecord, Secret), ServiceError> {
        let caller = &call.principal;
        let owner = key_owner(caller, user_name);
        if let Some(o) = &owner {
            check_name("userName", o, 1, 128)?;
        }
        let (id, secret) = {
            let mut rng = rand::rng();
            (new_access_key_id(&mut rng), new_secret(&mut rng))
        };
        let sealed = self.identities.seal(&id, secret.expose());
        let (acct, now, call) = (caller.account_id.clone(), self.clock.now(), call.clone());
        let record = store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let owner = match owner {
                    Some(o) => Some(tx.get_user(&acct, &o).await?.ok_or_else(|| no_such_user(&o))?.name),
                    None => None,
                };
                let existing = tx.list_access_keys(&acct, owner.as_deref()).await?;
                if existing.len() >= MAX_ACCESS_KEYS_PER_USER {
                    return Err(ServiceError::new(
                        LIMIT_EXCEEDED,
                        format!("Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS_PER_USER}"),
                    ));
                }
                let record = AccessKeyRecord {
                    access_key_id: id,
                    account_id: acct,
                    user_name: owner,
                    status: KeyStatus::Active,
                    sealed_secret: sealed,
                    created_at: now,
                };
                tx.insert_access_key(&record).await?;
                let resources = vec![call.resource(record.access_key_id.clone(), ACCESS_KEY)];
                call.record_success(tx, Some(json!({"accessKey": access_key_json(&record)})), resources).await?;
                Ok(record)
            })
        })
        .await?;
        Ok((record, secret))
    }

    pub async fn iam_list_access_keys(&self, call: &Arc<Call>, user_name: Option<&str>) -> Result<Vec<AccessKeyRecord>, ServiceError> {
        let caller = &call.principal;
        let owner = key_owner(caller, user_name);
        let acct = caller.account_id.clone();
        store::read(&*self.store, move |tx| {
            Box::pin(async move {
                let owner = match owner {
                    Some(o) => Some(tx.get_user(&acct, &o).await?.ok_or_else(|| no_such_user(&o))?.name),
                    None => None,
                };
                Ok(tx.list_access_keys(&acct, owner.as_deref()).await?)
            })
        })
        .await
    }

    /// Finds the key among the owner's keys (`NoSuchEntity` otherwise), then applies `change`.
    async fn with_owned_key(
        &self,
        call: &Arc<Call>,
        user_name: Option<&str>,
        access_key_id: &str,
        status: Option<KeyStatus>,
    ) -> Result<(), ServiceError> {
        let caller = &call.principal;
        let owner = key_owner(caller, user_name);
        let (acct, id, call) = (caller.account_id.clone(), access_key_id.to_string(), call.clone());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let key = tx.get_access_key(&id).await?;
                let owned = key.filter(|k| {
                    k.account_id == acct && k.user_name.as_deref().map(str::to_lowercase) == owner.as_deref().map(str::to_lowercase)
                });
                if owned.is_none() {
                    return Err(ServiceError::new(iam::NO_SUCH_ENTITY, format!("The Access Key with id {id} cannot be found")));
                }
                match status {
                    Some(s) => tx.set_access_key_status(&id, s).await?,
                    None => tx.delete_access_key(&id).await?,
                };
                call.record_success(tx, None, vec![call.resource(id.clone(), ACCESS_KEY)]).await?;
                Ok(())
            })
        })
        .await?;
        // The change takes effect at once: the next request re-reads the key.
        self.identities.invalidate(access_key_id);
        Ok(())
    }

    pub async fn iam_update_access_key(&self, call: &Arc<Call>, user_name: Option<&str>, access_key_id: &str, status: &str) -> Result<(), ServiceError> {
        let status = match status {
            "Active" => KeyStatus::Active,
            "Inactive" => KeyStatus::Inactive,
            other => return Err(iam::validation("status", other, "Member must satisfy enum value set: [Active, Inactive]")),
        };
        self.with_owned_key(call, user_name, access_key_id, Some(status)).await
    }

    pub async fn iam_delete_access_key(&self, call: &Arc<Call>, user_name: Option<&str>, access_key_id: &str) -> Result<(), ServiceError> {
        self.with_owned_key(call, user_name, access_key_id, None).await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn iam_create_role(
        &self,
        call: &Arc<Call>,
        name: &str,
        path: Option<&str>,
        policy_doc: &str,
        description: Option<String>,
        max_session_duration: Option<i64>,
        tags: Vec<IamTag>,
    ) -> Result<Role, ServiceError> {
        let caller = &call.principal;
        check_name("roleName", name, 1, 64)?;
        let path = path.unwrap_or("/");
        iam::check_path("path", path)?;
        iam::check_policy_text("assumeRolePolicyDocument", policy_doc)?;
        policy::parse(policy_doc, true)?;
        if let Some(d) = &description {
            iam::check_description(d)?;
        }
        let max = max_session_duration.unwrap_or(3600);
        if !(3600..=43200).contains(&max) {
            return Err(iam::validation("maxSessionDuration", &max.to_string(), "Member must have value between 3600 and 43200, inclusive"));
        }
        iam::check_tags(&tags)?;
        let call = call.clone();
        let role = Role {
            account_id: caller.account_id.clone(),
            name: name.to_string(),
            role_id: new_role_id(&mut rand::rng()),
            path: path.to_string(),
            description,
            assume_role_policy: policy_doc.to_string(),
            max_session_duration: max,
            tags,
            created_at: self.clock.now(),
        };
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                if tx.get_role(&role.account_id, &role.name).await?.is_some() {
                    return Err(ServiceError::new(ENTITY_ALREADY_EXISTS, format!("Role with name {} already exists.", role.name)));
                }
                tx.insert_role(&role).await?;
                call.record_success(tx, Some(json!({"role": role_json(&role)})), vec![call.resource(role.arn(), ROLE)]).await?;
                Ok(role)
            })
        })
        .await
    }

    pub async fn iam_get_role(&self, call: &Arc<Call>, name: &str) -> Result<Role, ServiceError> {
        let caller = &call.principal;
        check_name("roleName", name, 1, 64)?;
        let (acct, name) = (caller.account_id.clone(), name.to_string());
        store::read(&*self.store, move |tx| {
            Box::pin(async move { tx.get_role(&acct, &name).await?.ok_or_else(|| no_such_role(&name)) })
        })
        .await
    }

    pub async fn iam_list_roles(&self, call: &Arc<Call>, path_prefix: Option<String>, marker: Option<&str>, max_items: Option<i64>) -> Result<Page<Role>, ServiceError> {
        let caller = &call.principal;
        let limit = page_size(max_items)?;
        let after = decode_marker(marker)?;
        let acct = caller.account_id.clone();
        let roles = store::read(&*self.store, move |tx| {
            Box::pin(async move {
                let mut out = Vec::new();
                let mut cursor = after;
                loop {
                    let batch = tx.list_roles(&acct, cursor.as_deref(), 500).await?;
                    let done = batch.len() < 500;
                    cursor = batch.last().map(|r| r.name.clone());
                    out.extend(batch.into_iter().filter(|r| path_prefix.as_deref().is_none_or(|p| r.path.starts_with(p))));
                    if done || out.len() as i64 > limit {
                        break;
                    }
                }
                Ok::<_, ServiceError>(out)
            })
        })
        .await?;
        Ok(paged(roles, limit, |r| &r.name))
    }

    pub async fn iam_delete_role(&self, call: &Arc<Call>, name: &str) -> Result<(), ServiceError> {
        let caller = &call.principal;
        check_name("roleName", name, 1, 64)?;
        let (acct, name, call) = (caller.account_id.clone(), name.to_string(), call.clone());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                if !tx.delete_role(&acct, &name).await? {
                    return Err(no_such_role(&name));
                }
                call.record_success(tx, None, vec![call.resource(role_arn(&acct, &name), ROLE)]).await?;
                Ok(())
            })
        })
        .await
    }

    /// Reads a role, lets `change` edit it, and writes it back.
    async fn modify_role(
        &self,
        call: &Arc<Call>,
        name: &str,
        change: impl FnOnce(&mut Role) -> Result<(), ServiceError> + Clone + Send + 'static,
    ) -> Result<Role, ServiceError> {
        let caller = &call.principal;
        check_name("roleName", name, 1, 64)?;
        let (acct, name, call) = (caller.account_id.clone(), name.to_string(), call.clone());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let mut role = tx.get_role(&acct, &name).await?.ok_or_else(|| no_such_role(&name))?;
                change(&mut role)?;
                tx.update_role(&role).await?;
                call.record_success(tx, None, vec![call.resource(role.arn(), ROLE)]).await?;
                Ok(role)
            })
        })
        .await
    }

    pub async fn iam_update_assume_role_policy(&self, call: &Arc<Call>, name: &str, doc: &str) -> Result<(), ServiceError> {
        iam::check_policy_text("policyDocument", doc)?;
        policy::parse(doc, true)?;
        let doc = doc.to_string();
        self.modify_role(call, name, move |r| {
            r.assume_role_policy = doc;
            Ok(())
        })
        .await
        .map(|_| ())
    }

    pub async fn iam_tag_role(&self, call: &Arc<Call>, name: &str, tags: Vec<IamTag>) -> Result<(), ServiceError> {
        self.modify_role(call, name, move |r| iam::merge_tags(&mut r.tags, &tags)).await.map(|_| ())
    }

    pub async fn iam_untag_role(&self, call: &Arc<Call>, name: &str, keys: Vec<String>) -> Result<(), ServiceError> {
        self.modify_role(call, name, move |r| {
            r.tags.retain(|t| !keys.iter().any(|k| k.eq_ignore_ascii_case(&t.key)));
            Ok(())
        })
        .await
        .map(|_| ())
    }

    async fn modify_user_tags(
        &self,
        call: &Arc<Call>,
        name: &str,
        change: impl FnOnce(&mut Vec<IamTag>) -> Result<(), ServiceError> + Clone + Send + 'static,
    ) -> Result<(), ServiceError> {
        let caller = &call.principal;
        check_name("userName", name, 1, 128)?;
        let (acct, name, call) = (caller.account_id.clone(), name.to_string(), call.clone());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let mut user = tx.get_user(&acct, &name).await?.ok_or_else(|| no_such_user(&name))?;
                change(&mut user.tags)?;
                tx.set_user_tags(&acct, &user.name, &user.tags).await?;
                call.record_success(tx, None, vec![call.resource(user_arn(&acct, &user.name), USER)]).await?;
                Ok(())
            })
        })
        .await
    }

    pub async fn iam_tag_user(&self, call: &Arc<Call>, name: &str, tags: Vec<IamTag>) -> Result<(), ServiceError> {
        self.modify_user_tags(call, name, move |t| iam::merge_tags(t, &tags)).await
    }

    pub async fn iam_untag_user(&self, call: &Arc<Call>, name: &str, keys: Vec<String>) -> Result<(), ServiceError> {
        self.modify_user_tags(call, name, move |t| {
            t.retain(|x| !keys.iter().any(|k| k.eq_ignore_ascii_case(&x.key)));
            Ok(())
        })
        .await
    }
}
