// 账号: create a teacher or student account linked to its person.
import { ApiError, api, clearFormErrors, showFormError } from "./api.js";

const ROLE_LABELS = { teacher: "教师", student: "学生" };
const form = document.getElementById("account-form");
const role = document.getElementById("role");
const teacher = document.getElementById("teacher_id");
const schoolClass = document.getElementById("class_id");
const student = document.getElementById("student_id");
const displayName = document.getElementById("display_name");
const status = document.getElementById("account-status");

function showRoleParts() {
  for (const part of form.querySelectorAll("[data-role-part]")) {
    part.hidden = part.dataset.rolePart !== role.value;
  }
}

function fillName(select) {
  const option = select.selectedOptions[0];
  if (option && option.dataset.name && !displayName.value) displayName.value = option.dataset.name;
}

role.addEventListener("change", showRoleParts);
teacher.addEventListener("change", () => fillName(teacher));
student.addEventListener("change", () => fillName(student));
schoolClass.addEventListener("change", async () => {
  student.replaceChildren(new Option("请先选择班级", ""));
  student.disabled = true;
  if (!schoolClass.value) return;
  try {
    const students = await api(`/api/students?class_id=${schoolClass.value}&limit=1000`);
    student.replaceChildren(new Option(students.length ? "请选择学生" : "本班没有学生", ""));
    for (const s of students) {
      const option = new Option(`${s.name}（${s.student_no}）`, String(s.id));
      option.dataset.name = s.name;
      student.append(option);
    }
    student.disabled = false;
  } catch (error) {
    showFormError(form, error);
  }
});
showRoleParts();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(form);
  status.textContent = "";
  const data = new FormData(form);
  const body = {
    role: role.value,
    username: String(data.get("username") || "").trim(),
    display_name: String(data.get("display_name") || "").trim(),
  };
  const password = String(data.get("password") || "");
  if (password) body.password = password;
  const link = role.value === "teacher" ? "teacher_id" : "student_id";
  const linkValue = (role.value === "teacher" ? teacher : student).value;
  if (!linkValue) {
    const what = role.value === "teacher" ? "教师" : "学生";
    showFormError(form, new ApiError(`请选择要关联的${what}`, { field: link }));
    return;
  }
  body[link] = Number(linkValue);
  if (!body.username) {
    showFormError(form, new ApiError("请输入用户名", { field: "username" }));
    return;
  }
  if (!body.display_name) {
    showFormError(form, new ApiError("请输入显示名称", { field: "display_name" }));
    return;
  }
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    const account = await api("/api/accounts", { method: "POST", body });
    const row = document.createElement("tr");
    const linkedTeacher = role.value === "teacher" ? teacher.selectedOptions[0] : null;
    const cells = [account.display_name, ROLE_LABELS[account.role] || account.role, "", "启用"];
    const head = document.createElement("th");
    head.scope = "row";
    head.textContent = account.username;
    row.append(head);
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    row.classList.add("new-row");
    document.querySelector("#accounts tbody").prepend(row);
    if (linkedTeacher && linkedTeacher.value) linkedTeacher.remove();  // one account each
    form.reset();
    student.replaceChildren(new Option("请先选择班级", ""));
    student.disabled = true;
    showRoleParts();
    status.textContent = `已创建账号 ${account.username}。`;
  } catch (error) {
    showFormError(form, error);
  } finally {
    submit.disabled = false;
  }
});
