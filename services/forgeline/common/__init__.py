"""Building blocks shared by every Forgeline service: settings, errors, servers, jobs."""
