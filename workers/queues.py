"""The names web and workers share: the Celery task names and queues (no Celery app is built
here, so importing this module starts nothing)."""

PROCESS_JOB = "workers.tasks.process_job"
DELIVER_WEBHOOK = "workers.tasks.deliver_webhook"
SYNC_GALLERY_INDEXES = "workers.tasks.sync_gallery_indexes"
QUEUE_NAME = "faceapi"
# Webhook deliveries have a queue of their own, so that slow receivers never hold the workers
# that run jobs: `python -m stack.serve webhooks` consumes it alone (threads, no model), the job
# workers run with `--queues faceapi`; a worker started without --queues consumes both.
WEBHOOK_QUEUE = "webhooks"
