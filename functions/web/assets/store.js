// What the page knows of the caller's jobs and notifications, kept current by the event
// stream. Views subscribe and redraw what changed.

const RANK = { queued: 0, downloading: 1, converting: 2, done: 3, failed: 3, expired: 4 };

const jobs = new Map();
const jobListeners = new Set();
const unreadListeners = new Set();
const notificationListeners = new Set();
const resyncListeners = new Set();
let unread = 0;

/** A job as last seen, or undefined. */
export function job(id) {
  return jobs.get(id);
}

/**
 * Records a job's state unless it is older than what is known (an upload's answer can arrive
 * after the stream's first progress): statuses only go forward, progress only up.
 */
export function putJob(next) {
  const known = jobs.get(next.id);
  if (known && !isNewer(next, known)) return;
  jobs.set(next.id, next);
  for (const listener of jobListeners) listener(next.id, next);
}

function isNewer(next, known) {
  const a = RANK[next.status] ?? 0;
  const b = RANK[known.status] ?? 0;
  if (a !== b) return a > b;
  return next.progress >= known.progress || next.updated_at > known.updated_at;
}

/** Forgets a deleted job. */
export function dropJob(id) {
  jobs.delete(id);
  for (const listener of jobListeners) listener(id, null);
}

/** `listener(id, job or null)` on every change; answers the unsubscribe function. */
export function onJob(listener) {
  jobListeners.add(listener);
  return () => jobListeners.delete(listener);
}

export function unreadCount() {
  return unread;
}

export function setUnread(count) {
  unread = Math.max(0, count);
  for (const listener of unreadListeners) listener(unread);
}

export function onUnread(listener) {
  unreadListeners.add(listener);
  return () => unreadListeners.delete(listener);
}

/** `listener(notification)` for each new notification. */
export function onNotification(listener) {
  notificationListeners.add(listener);
  return () => notificationListeners.delete(listener);
}

/** `listener()` when the stream says to refetch everything. */
export function onResync(listener) {
  resyncListeners.add(listener);
  return () => resyncListeners.delete(listener);
}

/** Applies one event of the stream. */
export function apply(type, payload) {
  switch (type) {
    case "job.queued":
    case "job.progress":
    case "job.done":
    case "job.failed":
    case "job.expired":
      if (payload.job) putJob(payload.job);
      break;
    case "job.deleted":
      dropJob(payload.job_id);
      break;
    case "notification.created":
      if (payload.notification && !payload.notification.read) setUnread(unread + 1);
      for (const listener of notificationListeners) listener(payload.notification);
      break;
    case "resync":
      for (const listener of resyncListeners) listener();
      break;
    default:
      break;
  }
}

/** Forgets everything (sign out). */
export function clear() {
  jobs.clear();
  unread = 0;
}
