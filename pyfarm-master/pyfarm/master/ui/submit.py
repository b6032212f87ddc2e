"""
The submit page: choose a job type, then fill in a form built from its
parameters (its JSON Schema) and the fields every job has.

The form is turned into exactly the body ``POST /api/v1/jobs/`` takes and
goes through the API's own validation (``JobSpec``, then ``submit_job``
with the job type's schema), so the messages are the API's. A form with a
mistake comes back with the messages next to the fields and everything
typed kept (status 400). ``?copy=<job id>`` fills the form from an
existing job, for a resubmission.
"""

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from pyfarm.master.api.serialize import JOB_LOAD_OPTIONS, job_to_dict
from pyfarm.master.db import db, utcnow
from pyfarm.master.errors import ApiError, Conflict, NotFound
from pyfarm.master.models import Job, JobQueue, JobType, Software, Tag
from pyfarm.master.services import catalog
from pyfarm.master.services.jobs import JobSpec, submit_job
from pyfarm.master.ui import forms, ui
from pyfarm.master.ui.context import has_view
from pyfarm.master.ui.session import login_required
from pyfarm.master.validation import MAX_INT, body_problem, parse, query_int

#: How many names the tag and software suggestions list at most.
SUGGESTIONS = 1000


@ui.get("/submit")
@login_required
def submit():
    """Choose the job type of a new job."""
    jobtypes = db.session.execute(
        select(JobType).order_by(JobType.name)).scalars().all()
    choices = [{"jobtype": jobtype,
                "fields": forms.schema_fields(jobtype.parameters)}
               for jobtype in jobtypes]
    return render_template("submit.html", choices=choices)


@ui.route("/submit/<name>", methods=["GET", "POST"])
@login_required
def submit_form(name):
    """The form of a new job of job type ``name``; POST submits it."""
    jobtype = catalog.get_jobtype(db.session, name)
    fields = forms.schema_fields(jobtype.parameters)
    if request.method == "POST":
        return _submit(jobtype, fields)
    copy_id = query_int("copy", None, minimum=1, maximum=MAX_INT)
    if copy_id is None:
        return render_form(jobtype, fields, forms.blank_values(fields))
    job = db.session.execute(
        select(Job).options(*JOB_LOAD_OPTIONS)
        .where(Job.id == copy_id)).scalar()
    if job is None:
        raise NotFound(f"no job with id {copy_id} to copy")
    if job.jobtype.name != jobtype.name:
        return redirect(url_for("ui.submit_form", name=job.jobtype.name,
                                copy=job.id))
    values = forms.job_values(job_to_dict(job, {}), fields)
    return render_form(jobtype, fields, values, copy_of=job)


def _submit(jobtype, fields):
    """Validate the posted form as the API would and create the job."""
    values = forms.read_form(fields, request.form)
    payload, problems = forms.to_payload(
        jobtype.name, fields, values,
        forms.allows_other_data(jobtype.parameters))
    if not problems:
        problem = body_problem(payload)
        if problem is not None:
            problems = [problem]
    if problems:
        return render_form(jobtype, fields, values, problems, 400)
    user = current_user._get_current_object()
    try:
        spec = parse(JobSpec, payload)
        job = submit_job(db.session, user, spec, utcnow())
    except ApiError as error:
        # Nothing of a refused job is kept.
        db.session.rollback()
        problems = error.extra.get("problems") or [error.message]
        status = 409 if isinstance(error, Conflict) else 400
        return render_form(jobtype, fields, values, problems, status)
    job_id = job.id
    frames = len(range(job.start, job.end + 1, job.by))
    db.session.commit()
    flash(f"Job {job_id} submitted ({frames} frame"
          f"{'' if frames == 1 else 's'})")
    if has_view("ui.job"):
        return redirect(url_for("ui.job", job_id=job_id))
    return redirect(url_for("ui.jobs"))


def render_form(jobtype, fields, values, problems=(), status=200,
                copy_of=None):
    """Render the form of ``jobtype`` with ``values`` and the
    ``problems`` (messages) next to their fields."""
    problems = list(problems)
    queues = db.session.execute(
        select(JobQueue.name).order_by(JobQueue.name)).scalars().all()
    tags = db.session.execute(
        select(Tag.name).order_by(Tag.name).limit(SUGGESTIONS)
    ).scalars().all()
    software = db.session.execute(
        select(Software.name).order_by(Software.name).limit(SUGGESTIONS)
    ).scalars().all()
    return render_template(
        "submit_form.html", jobtype=jobtype, fields=fields, values=values,
        problems=problems, errors=forms.problems_by_field(problems),
        other_data=forms.allows_other_data(jobtype.parameters),
        queues=queues, known_tags=tags, known_software=software,
        copy_of=copy_of), status
