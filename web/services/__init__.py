"""What the API does, by resource; handlers call these once input is parsed and the caller known."""

from web.services.access import find_gallery, get_or_create_gallery, load_person, require_gallery, visible_to
from web.services.batches import find_batch, list_batches, submit_batch
from web.services.galleries import (
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
    face_document,
    list_faces,
    list_persons,
    person_document,
    update_person,
)
from web.services.submissions import (
    PROFILE_GALLERY,
    person_exists,
    queue_unavailable,
    submit_enrollment,
    submit_face,
    submit_profile_face,
    submit_recognition,
    submit_verification,
)

__all__ = [
    "PROFILE_GALLERY",
    "cancel_job",
    "create_gallery",
    "delete_face",
    "delete_gallery",
    "delete_person",
    "face_document",
    "find_batch",
    "find_gallery",
    "gallery_document",
    "get_or_create_gallery",
    "list_batches",
    "list_faces",
    "list_galleries",
    "list_jobs",
    "list_persons",
    "load_job",
    "load_person",
    "person_document",
    "person_exists",
    "queue_unavailable",
    "redeliver",
    "require_gallery",
    "set_gallery_threshold",
    "submit_batch",
    "submit_enrollment",
    "submit_face",
    "submit_profile_face",
    "submit_recognition",
    "submit_verification",
    "update_person",
    "visible_to",
]
