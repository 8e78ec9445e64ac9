//! IAM over the query protocol: parameters `Name`, lists as `Tags.member.N.Key`, results as
//! XML (`aws-api.md` conventions; member names from botocore's iam model).

use axum::response::Response;

use super::call::{CallContext, OpMeta, query_request_parameters};
use super::query::{self, QueryParams, QueryService, element};
use crate::app::iam::Page;
use crate::app::sts::iso8601;
use crate::domain::ServiceError;
use crate::domain::iam::VALIDATION_ERROR;
use crate::domain::identity::{AccessKeyRecord, IamTag, Role, User};

const SERVICE: QueryService = QueryService::Iam;

/// IAM actions this server answers, with how each is recorded.
pub fn meta(action: &str) -> Option<OpMeta> {
    const WRITES: &[&str] = &[
        "CreateUser", "DeleteUser", "CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey", "CreateRole", "DeleteRole",
        "UpdateAssumeRolePolicy", "TagUser", "UntagUser", "TagRole", "UntagRole",
    ];
    const READS: &[&str] = &["GetUser", "ListUsers", "ListAccessKeys", "GetRole", "ListRoles", "ListUserTags", "ListRoleTags"];
    WRITES
        .iter()
        .find(|a| **a == action)
        .map(|a| OpMeta::write(a))
        .or_else(|| READS.iter().find(|a| **a == action).map(|a| OpMeta::read(a)))
}

/// An IAM request with its parameters decoded (borrowed from the [`QueryParams`]): everything
/// the handler needs before it calls the application layer.
pub enum IamRequest<'a> {
    CreateUser { user_name: &'a str, path: Option<&'a str>, tags: Vec<IamTag> },
    GetUser { user_name: Option<&'a str> },
    ListUsers { path_prefix: Option<&'a str>, marker: Option<&'a str>, max_items: Option<i64> },
    DeleteUser { user_name: &'a str },
    CreateAccessKey { user_name: Option<&'a str> },
    ListAccessKeys { user_name: Option<&'a str> },
    UpdateAccessKey { user_name: Option<&'a str>, access_key_id: &'a str, status: &'a str },
    DeleteAccessKey { user_name: Option<&'a str>, access_key_id: &'a str },
    CreateRole {
        role_name: &'a str,
        path: Option<&'a str>,
        assume_role_policy_document: &'a str,
        description: Option<&'a str>,
        max_session_duration: Option<i64>,
        tags: Vec<IamTag>,
    },
    GetRole { role_name: &'a str },
    ListRoles { path_prefix: Option<&'a str>, marker: Option<&'a str>, max_items: Option<i64> },
    DeleteRole { role_name: &'a str },
    UpdateAssumeRolePolicy { role_name: &'a str, policy_document: &'a str },
    TagUser { user_name: &'a str, tags: Vec<IamTag> },
    UntagUser { user_name: &'a str, tag_keys: Vec<String> },
    ListUserTags { user_name: &'a str },
    TagRole { role_name: &'a str, tags: Vec<IamTag> },
    UntagRole { role_name: &'a str, tag_keys: Vec<String> },
    ListRoleTags { role_name: &'a str },
}

/// The parameters of `p`'s action (`InvalidAction` for one this server does not answer). Pure
/// (no I/O); the fuzz targets drive it.
pub fn decode(p: &QueryParams) -> Result<IamRequest<'_>, ServiceError> {
    Ok(match p.action.as_str() {
        "CreateUser" => IamRequest::CreateUser { user_name: required(p, "UserName")?, path: p.get("Path"), tags: tags(p)? },
        "GetUser" => IamRequest::GetUser { user_name: p.get("UserName") },
        "ListUsers" => IamRequest::ListUsers { path_prefix: p.get("PathPrefix"), marker: p.get("Marker"), max_items: int(p, "MaxItems")? },
        "DeleteUser" => IamRequest::DeleteUser { user_name: required(p, "UserName")? },
        "CreateAccessKey" => IamRequest::CreateAccessKey { user_name: p.get("UserName") },
        "ListAccessKeys" => IamRequest::ListAccessKeys { user_name: p.get("UserName") },
        "UpdateAccessKey" => IamRequest::UpdateAccessKey {
            user_name: p.get("UserName"),
            access_key_id: required(p, "AccessKeyId")?,
            status: required(p, "Status")?,
        },
        "DeleteAccessKey" => IamRequest::DeleteAccessKey { user_name: p.get("UserName"), access_key_id: required(p, "AccessKeyId")? },
        "CreateRole" => IamRequest::CreateRole {
            role_name: required(p, "RoleName")?,
            path: p.get("Path"),
            assume_role_policy_document: required(p, "AssumeRolePolicyDocument")?,
            description: p.get("Description"),
            max_session_duration: int(p, "MaxSessionDuration")?,
            tags: tags(p)?,
        },
        "GetRole" => IamRequest::GetRole { role_name: required(p, "RoleName")? },
        "ListRoles" => IamRequest::ListRoles { path_prefix: p.get("PathPrefix"), marker: p.get("Marker"), max_items: int(p, "MaxItems")? },
        "DeleteRole" => IamRequest::DeleteRole { role_name: required(p, "RoleName")? },
        "UpdateAssumeRolePolicy" => {
            IamRequest::UpdateAssumeRolePolicy { role_name: required(p, "RoleName")?, policy_document: required(p, "PolicyDocument")? }
        }
        "TagUser" => IamRequest::TagUser { user_name: required(p, "UserName")?, tags: tags(p)? },
        "UntagUser" => IamRequest::UntagUser { user_name: required(p, "UserName")?, tag_keys: p.list("TagKeys") },
        "ListUserTags" => IamRequest::ListUserTags { user_name: required(p, "UserName")? },
        "TagRole" => IamRequest::TagRole { role_name: required(p, "RoleName")?, tags: tags(p)? },
        "UntagRole" => IamRequest::UntagRole { role_name: required(p, "RoleName")?, tag_keys: p.list("TagKeys") },
        "ListRoleTags" => IamRequest::ListRoleTags { role_name: required(p, "RoleName")? },
        other => return Err(query::unknown_action(SERVICE, other)),
    })
}

/// How IAM request parameters are recorded.
pub fn request_parameters(p: &QueryParams) -> Option<serde_json::Value> {
    query_request_parameters(&p.params, &["MaxItems", "MaxSessionDuration"])
}

pub async fn handle(ctx: &mut CallContext<'_>) -> Result<Response, ServiceError> {
    let (app, incoming) = (ctx.app, ctx.incoming);
    let p = query::parse(SERVICE, incoming)?;
    let Some(op) = meta(&p.action) else { return Err(query::unknown_action(SERVICE, &p.action)) };
    let call = ctx.start(op, request_parameters(&p));
    let caller = &call;
    let action = p.action.as_str();
    let result = match decode(&p)? {
        IamRequest::CreateUser { user_name, path, tags } => {
            let u = app.iam_create_user(caller, user_name, path, tags).await?;
            format!("<User>{}</User>", user_xml(&u))
        }
        IamRequest::GetUser { user_name } => {
            let u = app.iam_get_user(caller, user_name).await?;
            if !u.is_root() {
                ctx.resources.push(caller.resource(u.arn(), "AWS::IAM::User"));
            }
            format!("<User>{}</User>", user_xml(&u))
        }
        IamRequest::ListUsers { path_prefix, marker, max_items } => {
            let page = app.iam_list_users(caller, path_prefix.map(str::to_string), marker, max_items).await?;
            list_xml("Users", &page, user_xml)
        }
        IamRequest::DeleteUser { user_name } => {
            app.iam_delete_user(caller, user_name).await?;
            String::new()
        }
        IamRequest::CreateAccessKey { user_name } => {
            let (k, secret) = app.iam_create_access_key(caller, user_name).await?;
            format!(
                "<AccessKey>{}{}</AccessKey>",
                key_xml(&k, &caller.principal),
                // Returned this once; stored only sealed.
                element("SecretAccessKey", secret.expose())
            )
        }
        IamRequest::ListAccessKeys { user_name } => {
            let keys = app.iam_list_access_keys(caller, user_name).await?;
            if let Some(name) = user_name {
                let u = app.iam_get_user(caller, Some(name)).await?;
                ctx.resources.push(caller.resource(u.arn(), "AWS::IAM::User"));
            }
            let members: String = keys.iter().map(|k| format!("<member>{}</member>", key_xml(k, &caller.principal))).collect();
            format!("<AccessKeyMetadata>{members}</AccessKeyMetadata><IsTruncated>false</IsTruncated>")
        }
        IamRequest::UpdateAccessKey { user_name, access_key_id, status } => {
            app.iam_update_access_key(caller, user_name, access_key_id, status).await?;
            String::new()
        }
        IamRequest::DeleteAccessKey { user_name, access_key_id } => {
            app.iam_delete_access_key(caller, user_name, access_key_id).await?;
            String::new()
        }
        IamRequest::CreateRole { role_name, path, assume_role_policy_document, description, max_session_duration, tags } => {
            let r = app
                .iam_create_role(
                    caller,
                    role_name,
                    path,
                    assume_role_policy_document,
                    description.map(str::to_string),
                    max_session_duration,
                    tags,
                )
                .await?;
            format!("<Role>{}</Role>", role_xml(&r))
        }
        IamRequest::GetRole { role_name } => {
            let r = app.iam_get_role(caller, role_name).await?;
            ctx.resources.push(caller.resource(r.arn(), "AWS::IAM::Role"));
            format!("<Role>{}</Role>", role_xml(&r))
        }
        IamRequest::ListRoles { path_prefix, marker, max_items } => {
            let page = app.iam_list_roles(caller, path_prefix.map(str::to_string), marker, max_items).await?;
            list_xml("Roles", &page, role_xml)
        }
        IamRequest::DeleteRole { role_name } => {
            app.iam_delete_role(caller, role_name).await?;
            String::new()
        }
        IamRequest::UpdateAssumeRolePolicy { role_name, policy_document } => {
            app.iam_update_assume_role_policy(caller, role_name, policy_document).await?;
            String::new()
        }
        IamRequest::TagUser { user_name, tags } => {
            app.iam_tag_user(caller, user_name, tags).await?;
            String::new()
        }
        IamRequest::UntagUser { user_name, tag_keys } => {
            app.iam_untag_user(caller, user_name, tag_keys).await?;
            String::new()
        }
        IamRequest::ListUserTags { user_name } => {
            let u = app.iam_get_user(caller, Some(user_name)).await?;
            ctx.resources.push(caller.resource(u.arn(), "AWS::IAM::User"));
            format!("<Tags>{}</Tags><IsTruncated>false</IsTruncated>", tags_xml(&u.tags))
        }
        IamRequest::TagRole { role_name, tags } => {
            app.iam_tag_role(caller, role_name, tags).await?;
            String::new()
        }
        IamRequest::UntagRole { role_name, tag_keys } => {
            app.iam_untag_role(caller, role_name, tag_keys).await?;
            String::new()
        }
        IamRequest::ListRoleTags { role_name } => {
            let r = app.iam_get_role(caller, role_name).await?;
            ctx.resources.push(caller.resource(r.arn(), "AWS::IAM::Role"));
            format!("<Tags>{}</Tags><IsTruncated>false</IsTruncated>", tags_xml(&r.tags))
        }
    };
    Ok(query::response(SERVICE, action, &result, &incoming.request_id))
}

fn required<'a>(p: &'a QueryParams, name: &str) -> Result<&'a str, ServiceError> {
    p.get(name).ok_or_else(|| {
        ServiceError::new(
            VALIDATION_ERROR,
            format!("1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null", lower_first(name)),
        )
    })
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
}

fn int(p: &QueryParams, name: &str) -> Result<Option<i64>, ServiceError> {
    p.get(name)
        .map(|v| v.parse().map_err(|_| ServiceError::new(VALIDATION_ERROR, format!("{name} must be an integer, got '{v}'."))))
        .transpose()
}

/// `Tags.member.N.Key` / `Tags.member.N.Value`.
pub fn tags(p: &QueryParams) -> Result<Vec<IamTag>, ServiceError> {
    p.structs("Tags")
        .into_iter()
        .map(|m| {
            let key = m.get("Key").cloned().ok_or_else(|| ServiceError::new(VALIDATION_ERROR, "Each tag needs a Key."))?;
            Ok(IamTag { key, value: m.get("Value").cloned().unwrap_or_default() })
        })
        .collect()
}

fn tags_xml(tags: &[IamTag]) -> String {
    tags.iter().map(|t| format!("<member>{}{}</member>", element("Key", &t.key), element("Value", &t.value))).collect()
}

fn user_xml(u: &User) -> String {
    let tags = if u.tags.is_empty() { String::new() } else { format!("<Tags>{}</Tags>", tags_xml(&u.tags)) };
    format!(
        "{}{}{}{}{}{tags}",
        element("Path", &u.path),
        element("UserName", &u.name),
        element("UserId", &u.user_id),
        element("Arn", &u.arn()),
        element("CreateDate", &iso8601(u.created_at)),
    )
}

fn role_xml(r: &Role) -> String {
    let tags = if r.tags.is_empty() { String::new() } else { format!("<Tags>{}</Tags>", tags_xml(&r.tags)) };
    let description = r.description.as_deref().map(|d| element("Description", d)).unwrap_or_default();
    format!(
        "{}{}{}{}{}{}{description}{}{tags}",
        element("Path", &r.path),
        element("RoleName", &r.name),
        element("RoleId", &r.role_id),
        element("Arn", &r.arn()),
        element("CreateDate", &iso8601(r.created_at)),
        // IAM returns the trust policy URL-encoded.
        element("AssumeRolePolicyDocument", &super::query::url_encode(&r.assume_role_policy)),
        element("MaxSessionDuration", &r.max_session_duration.to_string()),
    )
}

fn key_xml(k: &AccessKeyRecord, caller: &crate::domain::Principal) -> String {
    let user = k.user_name.clone().unwrap_or_else(|| caller.account_id.clone());
    format!(
        "{}{}{}{}",
        element("UserName", &user),
        element("AccessKeyId", &k.access_key_id),
        element("Status", k.status.as_str()),
        element("CreateDate", &iso8601(k.created_at)),
    )
}

fn list_xml<T>(wrapper: &str, page: &Page<T>, item: impl Fn(&T) -> String) -> String {
    let members: String = page.items.iter().map(|i| format!("<member>{}</member>", item(i))).collect();
    let marker = page.marker.as_deref().map(|m| element("Marker", m)).unwrap_or_default();
    format!("<{wrapper}>{members}</{wrapper}><IsTruncated>{}</IsTruncated>{marker}", page.marker.is_some())
}
