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

pub async fn handle(ctx: &mut CallContext<'_>) -> Result<Response, ServiceError> {
    let (app, incoming) = (ctx.app, ctx.incoming);
    let p = query::parse(SERVICE, incoming)?;
    let Some(op) = meta(&p.action) else { return Err(query::unknown_action(SERVICE, &p.action)) };
    let call = ctx.start(op, query_request_parameters(&p.params, &["MaxItems", "MaxSessionDuration"]));
    let caller = &call;
    let action = p.action.as_str();
    let result = match action {
        "CreateUser" => {
            let u = app.iam_create_user(caller, required(&p, "UserName")?, p.get("Path"), tags(&p)?).await?;
            format!("<User>{}</User>", user_xml(&u))
        }
        "GetUser" => {
            let u = app.iam_get_user(caller, p.get("UserName")).await?;
            if !u.is_root() {
                ctx.resources.push(caller.resource(u.arn(), "AWS::IAM::User"));
            }
            format!("<User>{}</User>", user_xml(&u))
        }
        "ListUsers" => {
            let page = app.iam_list_users(caller, p.get("PathPrefix").map(str::to_string), p.get("Marker"), int(&p, "MaxItems")?).await?;
            list_xml("Users", &page, user_xml)
        }
        "DeleteUser" => {
            app.iam_delete_user(caller, required(&p, "UserName")?).await?;
            String::new()
        }
        "CreateAccessKey" => {
            let (k, secret) = app.iam_create_access_key(caller, p.get("UserName")).await?;
            format!(
                "<AccessKey>{}{}</AccessKey>",
                key_xml(&k, &caller.principal),
                // Returned this once; stored only sealed.
                element("SecretAccessKey", secret.expose())
            )
        }
        "ListAccessKeys" => {
            let keys = app.iam_list_access_keys(caller, p.get("UserName")).await?;
            if let Some(name) = p.get("UserName") {
                let u = app.iam_get_user(caller, Some(name)).await?;
                ctx.resources.push(caller.resource(u.arn(), "AWS::IAM::User"));
            }
            let members: String = keys.iter().map(|k| format!("<member>{}</member>", key_xml(k, &caller.principal))).collect();
            format!("<AccessKeyMetadata>{members}</AccessKeyMetadata><IsTruncated>false</IsTruncated>")
        }
        "UpdateAccessKey" => {
            app.iam_update_access_key(caller, p.get("UserName"), required(&p, "AccessKeyId")?, required(&p, "Status")?).await?;
            String::new()
        }
        "DeleteAccessKey" => {
            app.iam_delete_access_key(caller, p.get("UserName"), required(&p, "AccessKeyId")?).await?;
            String::new()
        }
        "CreateRole" => {
            let r = app
                .iam_create_role(
                    caller,
                    required(&p, "RoleName")?,
                    p.get("Path"),
                    required(&p, "AssumeRolePolicyDocument")?,
                    p.get("Description").map(str::to_string),
                    int(&p, "MaxSessionDuration")?,
                    tags(&p)?,
                )
                .await?;
            format!("<Role>{}</Role>", role_xml(&r))
        }
        "GetRole" => {
            let r = app.iam_get_role(caller, required(&p, "RoleName")?).await?;
            ctx.resources.push(caller.resource(r.arn(), "AWS::IAM::Role"));
            format!("<Role>{}</Role>", role_xml(&r))
        }
        "ListRoles" => {
            let page = app.iam_list_roles(caller, p.get("PathPrefix").map(str::to_string), p.get("Marker"), int(&p, "MaxItems")?).await?;
            list_xml("Roles", &page, role_xml)
        }
        "DeleteRole" => {
            app.iam_delete_role(caller, required(&p, "RoleName")?).await?;
            String::new()
        }
        "UpdateAssumeRolePolicy" => {
            app.iam_update_assume_role_policy(caller, required(&p, "RoleName")?, required(&p, "PolicyDocument")?).await?;
            String::new()
        }
        "TagUser" => {
            app.iam_tag_user(caller, required(&p, "UserName")?, tags(&p)?).await?;
            String::new()
        }
        "UntagUser" => {
            app.iam_untag_user(caller, required(&p, "UserName")?, p.list("TagKeys")).await?;
            String::new()
        }
        "ListUserTags" => {
            let u = app.iam_get_user(caller, Some(required(&p, "UserName")?)).await?;
            ctx.resources.push(caller.resource(u.arn(), "AWS::IAM::User"));
            format!("<Tags>{}</Tags><IsTruncated>false</IsTruncated>", tags_xml(&u.tags))
        }
        "TagRole" => {
            app.iam_tag_role(caller, required(&p, "RoleName")?, tags(&p)?).await?;
            String::new()
        }
        "UntagRole" => {
            app.iam_untag_role(caller, required(&p, "RoleName")?, p.list("TagKeys")).await?;
            String::new()
        }
        "ListRoleTags" => {
            let r = app.iam_get_role(caller, required(&p, "RoleName")?).await?;
            ctx.resources.push(caller.resource(r.arn(), "AWS::IAM::Role"));
            format!("<Tags>{}</Tags><IsTruncated>false</IsTruncated>", tags_xml(&r.tags))
        }
        other => return Err(query::unknown_action(SERVICE, other)),
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
