/*
 * error.h - the one error enum of roomcast.
 *
 * Every function that can fail returns 0 (RC_OK) or a negative rc_err value;
 * rc_strerror() turns it into text. Anything a peer or a client can cause is
 * returned, never asserted.
 */
#ifndef RC_ERROR_H
#define RC_ERROR_H

enum rc_err {
	RC_OK = 0,
	RC_ENOMEM = -1,     /* allocation failed */
	RC_EINVAL = -2,     /* invalid argument or input */
	RC_ERANGE = -3,     /* number out of range */
	RC_ETOOBIG = -4,    /* input larger than the configured limit */
	RC_ETRUNC = -5,     /* input ends early */
	RC_EPROTO = -6,     /* corrupt or unknown wire data */
	RC_ENOTFOUND = -7,  /* no such item */
	RC_EEPOCH = -8,     /* id belongs to another epoch */
	RC_EEVICTED = -9,   /* id older than the retained history */
	RC_ECLOSED = -10,   /* object is shutting down */
	RC_ETIMEDOUT = -11, /* deadline passed */
	RC_EIO = -12,       /* system or transport error */
};

/* Returns a static, human-readable description of err (any int). */
const char *rc_strerror(int err);

#endif
