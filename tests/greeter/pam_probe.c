/* pam_probe.so: the stand-in for the password module after pam_sspr.so in the greeter test.
 * It succeeds only when PAM_AUTHTOK (the password pam_sspr hands on) equals the content of
 * the file file=PATH (one trailing newline ignored), so a session that starts proves which
 * password was handed on. It never prompts. log=PATH appends one line per call (the outcome,
 * never the password). Built by tests/greeter/run with gcc against libpam0g-dev. */
#define PAM_SM_AUTH
#include <security/pam_modules.h>
#include <security/pam_ext.h>
#include <stdio.h>
#include <string.h>

static void note(const char *log, const char *user, const char *what) {
    if (!log) return;
    FILE *f = fopen(log, "a");
    if (!f) return;
    fprintf(f, "pam_probe user=%s %s\n", user ? user : "?", what);
    fclose(f);
}

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    (void)flags;
    const char *file = NULL, *log = NULL, *user = NULL;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "file=", 5) == 0) file = argv[i] + 5;
        else if (strncmp(argv[i], "log=", 4) == 0) log = argv[i] + 4;
    }
    pam_get_item(pamh, PAM_USER, (const void **)&user);
    const void *tok = NULL;
    if (pam_get_item(pamh, PAM_AUTHTOK, &tok) != PAM_SUCCESS || tok == NULL) {
        note(log, user, "no-authtok");
        return PAM_AUTH_ERR;
    }
    char want[1024] = {0};
    FILE *f = file ? fopen(file, "r") : NULL;
    if (!f) { note(log, user, "no-expected-file"); return PAM_AUTH_ERR; }
    size_t n = fread(want, 1, sizeof want - 1, f);
    fclose(f);
    want[n] = 0;
    if (n > 0 && want[n - 1] == '\n') want[n - 1] = 0;
    if (strcmp((const char *)tok, want) == 0) { note(log, user, "match"); return PAM_SUCCESS; }
    note(log, user, "mismatch");
    return PAM_AUTH_ERR;
}

PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    (void)pamh; (void)flags; (void)argc; (void)argv;
    return PAM_SUCCESS;
}
