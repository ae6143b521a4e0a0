# sspr 网页门户：简体中文。这里的每个键都必须也在 en.ftl 中（有测试检查）。

## Shared
app-name = 密码自助服务
skip-to-content = 跳到正文
language = 语言
footer-help = 遇到问题？技术支持可以根据错误页面上显示的支持代码查到发生了什么。
support-code = 支持代码
next = 下一步
cancel = 取消
back-home = 返回首页
verify = 验证
error-title = 出现问题
error-help = 请返回并重试。如果问题一直出现，请把支持代码告诉技术支持。
error-retry = 请在 { $minutes } 分钟后重试。
error-bad-form = 无法读取表单。请刷新页面后重新提交。
error-csrf = 此表单已过期或不是来自本网站。请刷新页面后重试。
error-not-found = 没有这个页面。请从首页重新开始。
flow-missing = 你的重置会话已结束或尚未开始。请输入用户 ID 重新开始。
user-id = 用户 ID
user-id-hint = 你的登录名，例如 jdoe 或 jdoe@example.com。
method-email = 电子邮件
method-sms = 短信
method-questions = 安全问题
method-totp = 身份验证器应用

## Home
home-title = 帐户被锁定或忘记了密码？
home-lead = 用你注册过的安全信息证明身份，然后设置新密码，无需致电技术支持。
home-reset = 重置我的密码
home-reset-hint = 忘记了密码，或密码已过期。
home-unlock = 解锁我的帐户
home-unlock-hint = 输错次数太多被锁定；保留现有密码。
home-register = 设置我的安全信息
home-register-hint = 注册电子邮件、手机、安全问题或身份验证器应用，以便以后自助重置。
home-admin = 管理员

## Reset and unlock
start-title-reset = 重置密码
start-title-unlock = 解锁帐户
start-lead-reset = 请输入你的用户 ID。接下来你将用注册过的安全信息验证身份。
start-lead-unlock = 请输入你的用户 ID。验证身份后，你的帐户将被解锁，密码保持不变。
pow-waiting = 正在检查浏览器……请稍候。
pow-ready = 浏览器检查完成。
pow-noscript = 此页面需要 JavaScript 进行简短的自动浏览器检查。请启用 JavaScript，或在电脑登录界面使用“忘记密码？”。
needinfo-title = 需要更多安全信息
needinfo-what = 要自助重置密码，请在还记得密码时先注册安全信息（电子邮件地址、手机号码、安全问题或身份验证器应用）。
needinfo-register = 注册安全信息
needinfo-helpdesk = 如果你完全无法登录，请联系技术支持。
methods-title = 验证你的身份
methods-lead = 请选择一种方式证明是你本人。
methods-legend = 验证方式
methods-verified = 已验证
step-of = 第 { $n } 步，共 { $total } 步
verify-title = 输入验证信息
code-label-email = 邮件中的验证码
code-label-sms = 短信中的验证码
code-label-totp = 身份验证器应用中的验证码
code-sent-to = 我们已向 { $to } 发送验证码，可能需要一分钟才能收到。
code-hint-totp = 打开身份验证器应用，输入它为此帐户显示的 6 位验证码。
other-method = 使用其他方式
password-title = 设置新密码
password-rules = 新密码必须符合以下规则
new-password = 新密码
confirm-password = 确认新密码
password-mismatch = 两次输入的密码不一致。请输入两次新密码。
strength-hint = 越长越安全：几个互不相关的词组成的密码就很好。
strength-labels = 非常弱|弱|一般|较强|强
set-password = 更改密码
unlock-title = 解锁帐户
unlock-button = 解锁我的帐户
done-title = 完成
done-next-reset = 请用新密码登录。保存了旧密码的设备（手机邮件、Wi-Fi）会要求输入新密码。
done-next-unlock = 请用你现在的密码登录。

## Registration

## Admin
