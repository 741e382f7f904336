#include "error.h"

const char *rc_strerror(int err)
{
	switch (err) {
	case RC_OK: return "success";
	case RC_ENOMEM: return "out of memory";
	case RC_EINVAL: return "invalid input";
	case RC_ERANGE: return "number out of range";
	case RC_ETOOBIG: return "too large";
	case RC_ETRUNC: return "truncated";
	case RC_EPROTO: return "protocol error";
	case RC_ENOTFOUND: return "not found";
	case RC_EEPOCH: return "unknown epoch";
	case RC_EEVICTED: return "older than the retained history";
	case RC_ECLOSED: return "shutting down";
	case RC_ETIMEDOUT: return "timed out";
	case RC_EIO: return "i/o error";
	}
	return "unknown error";
}
