/* pam_probe.so: the stand-in for the password module after pam_sspr.so in the greeter test.
 * auth: succeeds only when PAM_AUTHTOK (the password pam_sspr hands on) equals the content of
 * the file file=PATH (one trailing newline ignored), so a session that starts proves which
 * password was handed on. account: with expired=PATH, answers PAM_NEW_AUTHTOK_REQD while that
 * file exists (an expired password, as pam_unix or SSSD would), so LightDM asks the password
 * stack for a new one. password: the module after pam_sspr.so; it succeeds only when the new
 * PAM_AUTHTOK pam_sspr hands on equals file=PATH (what a keyring re-encrypting would get).
 * It never prompts. log=PATH appends one line per call (the outcome, never the password).
 * Built by tests/greeter/run with gcc against libpam0g-dev. */
#define PAM_SM_AUTH
#define PAM_SM_ACCOUNT
#define PAM_SM_PASSWORD
#include <security/pam_modules.h>
#include <security/pam_ext.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void note(const char *log, const char *user, const char *what) {
    if (!log) return;
    FILE *f = fopen(log, "a");
    if (!f) return;
    fprintf(f, "pam_probe user=%s %s\n", user ? user : "?", what);
    fclose(f);
}

static const char *arg(int argc, const char **argv, const char *name) {
    size_t len = strlen(name);
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], name, len) == 0 && argv[i][len] == '=') return argv[i] + len + 1;
    return NULL;
}

/* 1 when PAM_AUTHTOK equals the content of file=, noted in log= as `what` plus the outcome. */
static int authtok_matches(pam_handle_t *pamh, int argc, const char **argv, const char *what) {
    const char *file = arg(argc, argv, "file"), *log = arg(argc, argv, "log"), *user = NULL;
    char line[64];
    pam_get_item(pamh, PAM_USER, (const void **)&user);
    const void *tok = NULL;
    if (pam_get_item(pamh, PAM_AUTHTOK, &tok) != PAM_SUCCESS || tok == NULL) {
        snprintf(line, sizeof line, "%sno-authtok", what);
        note(log, user, line);
        return 0;
    }
    char want[1024] = {0};
    FILE *f = file ? fopen(file, "r") : NULL;
    if (!f) { note(log, user, "no-expected-file"); return 0; }
    size_t n = fread(want, 1, sizeof want - 1, f);
    fclose(f);
    want[n] = 0;
    if (n > 0 && want[n - 1] == '\n') want[n - 1] = 0;
    int ok = strcmp((const char *)tok, want) == 0;
    snprintf(line, sizeof line, "%s%s", what, ok ? "match" : "mismatch");
    note(log, user, line);
    return ok;
}

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    (void)flags;
    return authtok_matches(pamh, argc, argv, "") ? PAM_SUCCESS : PAM_AUTH_ERR;
}

PAM_EXTERN int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    (void)flags;
    const char *expired = arg(argc, argv, "expired"), *user = NULL;
    pam_get_item(pamh, PAM_USER, (const void **)&user);
    if (expired && access(expired, F_OK) == 0) {
        note(arg(argc, argv, "log"), user, "account-expired");
        return PAM_NEW_AUTHTOK_REQD;
    }
    return PAM_SUCCESS;
}

PAM_EXTERN int pam_sm_chauthtok(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    if (flags & PAM_PRELIM_CHECK) return PAM_SUCCESS;
    return authtok_matches(pamh, argc, argv, "chauthtok ") ? PAM_SUCCESS : PAM_AUTHTOK_ERR;
}

PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    (void)pamh; (void)flags; (void)argc; (void)argv;
    return PAM_SUCCESS;
}
