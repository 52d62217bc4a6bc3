"""What the API does, by resource; handlers call these once input is parsed and the caller known.

Transactions: the service owns them. A service that changes data commits (or rolls back) its own
unit of work, because some must commit at a precise point (a job is committed before its id is
enqueued, and undone if the queue is down); a view never calls session.commit() or rollback().
Two pieces of bookkeeping run beside that rule, each on its own rows: web/idempotency.py claims an
Idempotency-Key in the request's transaction (the service's commit carries it) and records the
answer after the view; domain.api_keys.authenticate commits a key's last_used_at.

"Load or 404" is one helper, access.one_or_404: the query leaves out what the caller may not see,
so another organisation's row answers exactly as a missing one.
"""

from web.services.access import (
    check_scope,
    find_gallery,
    get_or_create_gallery,
    load_person,
    one_or_404,
    require_force_allowed,
    require_gallery,
    require_signed_in,
    require_whole_organisation,
    visible_to,
)
from web.services.accounts import (
    change_password,
    change_role,
    create_account,
    create_api_key,
    delete_account,
    load_account,
    revoke_api_key,
    rotate_webhook_secret,
    sign_up,
    webhook_secret,
)
from web.services.batches import list_batches, load_batch, submit_batch
from web.services.galleries import (
    UNCHANGED,
    change_gallery,
    create_gallery,
    delete_gallery,
    gallery_document,
    list_galleries,
    set_gallery_threshold,
)
from web.services.jobs import cancel_job, list_jobs, load_job, redeliver
from web.services.persons import (
    delete_face,
    delete_person,
    face_crop,
    face_document,
    list_faces,
    list_persons,
    merge_persons,
    move_face,
    person_document,
    update_person,
)
from web.services.search import search_by_face
from web.services.submissions import (
    PROFILE_GALLERY,
    person_exists,
    queue_unavailable,
    submit_detection,
    submit_enrollment,
    submit_face,
    submit_profile_face,
    submit_recognition,
    submit_verification,
)

__all__ = [
    "PROFILE_GALLERY",
    "cancel_job",
    "change_password",
    "change_role",
    "check_scope",
    "create_account",
    "create_api_key",
    "create_gallery",
    "delete_account",
    "delete_face",
    "delete_gallery",
    "delete_person",
    "face_crop",
    "face_document",
    "find_gallery",
    "gallery_document",
    "get_or_create_gallery",
    "list_batches",
    "list_faces",
    "list_galleries",
    "list_jobs",
    "list_persons",
    "load_account",
    "load_batch",
    "load_job",
    "load_person",
    "merge_persons",
    "move_face",
    "one_or_404",
    "person_document",
    "person_exists",
    "queue_unavailable",
    "redeliver",
    "require_force_allowed",
    "require_gallery",
    "require_signed_in",
    "require_whole_organisation",
    "revoke_api_key",
    "rotate_webhook_secret",
    "set_gallery_threshold",
    "change_gallery",
    "UNCHANGED",
    "sign_up",
    "search_by_face",
    "submit_batch",
    "submit_detection",
    "submit_enrollment",
    "submit_face",
    "submit_profile_face",
    "submit_recognition",
    "submit_verification",
    "update_person",
    "visible_to",
    "webhook_secret",
]
