// appt.js: reading appointment answers, whatever optional fields they carry.

/** startOf returns an appointment's start time. */
export const startOf = (a) => a.start || a.starts_at;
/** endOf returns an appointment's end time. */
export const endOf = (a) => a.end || a.ends_at;
/** practitionerName names the practitioner of an appointment. */
export const practitionerName = (a) => a.practitioner_name || (a.practitioner && a.practitioner.name) || '';
/** patientName names who is seen: the relative, else the patient. */
export const patientName = (a) => a.relative_name || a.patient_name || (a.patient && a.patient.name) || '';
/** isVideo reports whether the appointment is a video consult. */
export const isVideo = (a) => a.mode === 'video';
/** isOpen reports whether the appointment still holds its slot and lies ahead. */
export const isOpen = (a) => ['pending_payment', 'confirmed', 'arrived', 'in_progress'].includes(a.status);

// Why 15 minutes: the room opens a little before the time so that the
// patient can check their camera and wait.
const JOIN_EARLY_MS = 15 * 60 * 1000;

/** canJoin reports whether the video room is open for this appointment now. */
export function canJoin(a, now = Date.now()) {
  if (!isVideo(a) || !['confirmed', 'arrived', 'in_progress'].includes(a.status)) return false;
  return now >= new Date(startOf(a)).getTime() - JOIN_EARLY_MS && now <= new Date(endOf(a)).getTime() + 60 * 60 * 1000;
}
