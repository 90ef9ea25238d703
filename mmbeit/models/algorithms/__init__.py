"""algorithms components."""
